"""Routing configuration and per-record table resolution."""

import pytest

from tests.transforms.records.helpers import chunk, record
from transforms.records import ParseRecords, RecordParser, Routing, parse_topic_table_map

pytestmark = pytest.mark.unit


def test_parse_topic_table_map_reads_pairs_in_order():
  assert parse_topic_table_map(' t1=db.a, t2 = db.b ,') == {'t1': 'db.a', 't2': 'db.b'}


@pytest.mark.parametrize('value', ['t1', 't1=', '=db.a', 't1=db.a,t1=db.b', 't1=db.a-b', '',
                                   ' , ', 't1=db.a.b'])
def test_parse_topic_table_map_rejects_bad_values_naming_the_flag(value):
  with pytest.raises(ValueError, match='--topic_table_map') as info:
    parse_topic_table_map(value)
  assert repr(value) in str(info.value) or value.strip(', ') in str(info.value)


def test_routing_accepts_only_one_flag():
  with pytest.raises(ValueError, match='--table and --table_field are exclusive'):
    Routing(table='db.t', table_field='tbl')
  with pytest.raises(ValueError, match='--table and --topic_table_map'):
    Routing(table='db.t', topic_table_map={'a': 'db.a'})


def test_routing_rejects_bad_table_names_naming_the_flag():
  with pytest.raises(ValueError, match="--table: bad table name 'db.t-1'"):
    Routing(table='db.t-1')
  with pytest.raises(ValueError, match='--table: table .t. has no database'):
    Routing(table='t')
  with pytest.raises(ValueError, match='--topic_table_map'):
    Routing(topic_table_map={'a': 'db.x y'})
  with pytest.raises(ValueError, match='--topic_table_map: empty map'):
    Routing(topic_table_map={})
  with pytest.raises(ValueError, match='--table_field'):
    Routing(table_field='')
  with pytest.raises(ValueError, match='--default_database'):
    Routing(table='t', default_database='a.b')


def test_routing_is_hashable_and_compares_by_value():
  a = Routing(topic_table_map='t1=db.a')
  assert a == Routing(topic_table_map={'t1': 'db.a'})
  assert hash(a) == hash(Routing(topic_table_map={'t1': 'db.a'}))


def test_routing_qualifies_bare_names_with_default_database():
  routing = Routing(topic_table_map='t1=a,t2=other.b', default_database='db')
  assert routing.topic_table_map == {'t1': 'db.a', 't2': 'other.b'}
  assert Routing(table='t', default_database='db').table == 'db.t'
  assert routing.qualify('x') == 'db.x'
  assert routing.qualify('x', 'src') == 'src.x'
  assert routing.qualify('bad-name') is None


def test_plain_records_need_a_routing_flag():
  with pytest.raises(ValueError, match='--table, --topic_table_map, --table_field'):
    ParseRecords(Routing())
  ParseRecords(Routing(), cdc='debezium')  # CDC envelopes name their tables.


def test_bad_cdc_and_target_name_the_flag():
  with pytest.raises(ValueError, match="--cdc_format: .*'debezium2'"):
    ParseRecords(Routing(table='db.t'), cdc='debezium2')
  with pytest.raises(ValueError, match="--target: .*'mysql'"):
    ParseRecords(Routing(table='db.t'), target='mysql')
  with pytest.raises(ValueError, match='--max_record_bytes'):
    ParseRecords(Routing(table='db.t'), max_record_bytes=0)


def test_fixed_table_routes_every_record():
  parser = RecordParser(Routing(table='db.events'))
  result = parser.parse_chunk(chunk([{'a': 1}, {'a': 2}], topic='x'))
  assert list(result.rows_by_table) == ['db.events']
  assert [r.fields['a'] for r in result.rows_by_table['db.events']] == [1, 2]


def test_topic_table_map_routes_by_topic_and_dead_letters_unmapped_topics():
  parser = RecordParser(Routing(topic_table_map={'t1': 'db.a', 't2': 'db.b'}))
  assert list(parser.parse_chunk(chunk([{'x': 1}], topic='t2')).rows_by_table) == ['db.b']
  result = parser.parse_chunk(chunk([{'x': 1}, b'not json'], topic='t3'))
  assert result.rows_by_table == {}
  assert [d.reason for d in result.dead_letters] == [
      "unmapped_topic: topic 't3' is not in --topic_table_map"] * 2
  assert result.chunk_read.count == 2


def test_table_field_routes_each_row_and_keeps_the_field():
  parser = RecordParser(Routing(table_field='tbl', default_database='db'))
  result = parser.parse_chunk(chunk([
      {'tbl': 'a', 'v': 1}, {'tbl': 'other.b', 'v': 2}, {'tbl': 'a', 'v': 3}]))
  assert {t: [r.fields['v'] for r in rows] for t, rows in result.rows_by_table.items()} == {
      'db.a': [1, 3], 'other.b': [2]}
  assert result.rows_by_table['db.a'][0].fields['tbl'] == 'a'


def test_table_field_errors_are_dead_letters():
  parser = RecordParser(Routing(table_field='tbl'))
  result = parser.parse_chunk(chunk([
      {'v': 1}, {'tbl': 'bare', 'v': 1}, {'tbl': 'db.x;drop', 'v': 1}, {'tbl': 5},
      {'tbl': ['db.a']}, {'tbl': 'db.ok'}]))
  reasons = [d.reason for d in result.dead_letters]
  assert reasons[0] == "missing_table: no field 'tbl' (--table_field) in the record"
  assert reasons[1].startswith("bad_table_name: field 'tbl': table 'bare' has no database")
  assert reasons[2].startswith("bad_table_name: field 'tbl': bad table name 'db.x;drop'")
  assert reasons[3].startswith('bad_table_name:')
  assert reasons[4].startswith('bad_table_name:')
  assert list(result.rows_by_table) == ['db.ok']
  assert result.chunk_read.count == 6


def test_parse_record_raises_value_error_with_the_reason():
  parser = RecordParser(Routing(table='db.t'))
  with pytest.raises(ValueError, match='invalid_json'):
    parser.parse_record(record(b'{'))
  assert parser.parse_record(record({'a': 1}))[0].table == 'db.t'


# -- topic patterns in --topic_table_map --------------------------------------------------------


@pytest.mark.unit
def test_a_key_of_topic_name_characters_is_an_exact_name_any_other_a_pattern():
  from transforms.records.routing import is_topic_name
  assert is_topic_name('orders.v1-eu_2')
  assert not is_topic_name('orders_.*')
  assert not is_topic_name('logs_[0-9]+')
  assert not is_topic_name('(a|b)')


@pytest.mark.unit
def test_patterns_match_whole_topic_names_exact_names_win_first_pattern_wins():
  routing = Routing(topic_table_map=parse_topic_table_map(
      'orders_.*=db.orders, orders_eu=db.orders_eu, orders_[a-z]{2}=db.two_letters, '
      'orders.v1=db.v1'))
  mapping = routing.topic_table_map
  assert mapping.get('orders_eu') == 'db.orders_eu'    # the exact name wins over both patterns
  assert mapping.get('orders_us') == 'db.orders'       # the first matching pattern, in order
  assert mapping.get('orders_') == 'db.orders'
  assert mapping.get('xorders_us') is None             # a pattern matches the whole name
  assert mapping.get('orders.v1') == 'db.v1'
  assert mapping.get('ordersXv1') is None              # '.' in an exact name is a dot
  assert 'orders_us' in mapping and 'users' not in mapping
  assert mapping['orders_us'] == 'db.orders'
  with pytest.raises(KeyError):
    _ = mapping['users']
  assert mapping.patterns == ('orders_.*', 'orders_[a-z]{2}')
  # The keys stay as written (display data, hashing, equality).
  assert list(mapping) == ['orders_.*', 'orders_eu', 'orders_[a-z]{2}', 'orders.v1']
  assert routing == Routing(topic_table_map=dict(mapping)) and hash(routing) == hash(
      Routing(topic_table_map=dict(mapping)))


@pytest.mark.unit
def test_pattern_routes_survive_pickling():
  import pickle
  routing = Routing(topic_table_map={'ev_.*': 'db.events'})
  copy = pickle.loads(pickle.dumps(routing))
  assert copy.topic_table_map.get('ev_eu') == 'db.events'
  assert copy == routing


@pytest.mark.unit
@pytest.mark.parametrize('value', ['orders_(=db.a', 'a[=db.a'])
def test_a_bad_pattern_key_names_the_flag(value):
  with pytest.raises(ValueError, match='--topic_table_map') as info:
    parse_topic_table_map(value)
  assert value.split('=')[0] in str(info.value)
  with pytest.raises(ValueError, match='--topic_table_map'):
    Routing(topic_table_map={value.split('=')[0]: 'db.a'})


@pytest.mark.unit
def test_chunks_route_by_pattern_and_unmatched_topics_are_dead_letters():
  parser = RecordParser(Routing(topic_table_map={'ev_.*': 'db.events', 'users': 'db.users'}))
  assert list(parser.parse_chunk(chunk([{'x': 1}], topic='ev_eu')).rows_by_table) == ['db.events']
  assert list(parser.parse_chunk(chunk([{'x': 1}], topic='users')).rows_by_table) == ['db.users']
  result = parser.parse_chunk(chunk([{'x': 1}], topic='orders'))
  assert result.rows_by_table == {}
  assert [d.reason.split(':')[0] for d in result.dead_letters] == ['unmapped_topic']
