"""Doris Stream Load regression cases, ported.

Each test names the apache/doris suite it comes from
(``regression-test/suites/load_p0/stream_load/<suite>.groovy``); inputs are copied into
``tests/stream_load_emulator/data/`` and the expected rows come from the suite's ``.out`` file.
"""

import os

from tests.stream_load_emulator.helpers import stream_load
import pytest

pytestmark = pytest.mark.transform

DATA = os.path.join(os.path.dirname(__file__), 'data')


def _read(name):
  with open(os.path.join(DATA, name), 'rb') as f:
    return f.read()


def test_load_json_with_jsonpath(make_stream_load_server):
  srv = make_stream_load_server(schema_sql='''
      CREATE DATABASE regression_test;
      CREATE TABLE IF NOT EXISTS regression_test.tbl_test_load_json_with_jsonpath (
        `k1` INT NULL COMMENT "",
        `v1` DOUBLE NULL COMMENT ""
      ) ENGINE=OLAP
      DUPLICATE KEY(`k1`)
      DISTRIBUTED BY HASH(`k1`) BUCKETS 1
      PROPERTIES ("replication_allocation" = "tag.location.default: 1",
                  "storage_format" = "V2")''')
  res = stream_load(srv, 'regression_test', 'tbl_test_load_json_with_jsonpath',
                    _read('test_load_with_jsonpath.json'),
                    {'strip_outer_array': 'true', 'format': 'json',
                     'jsonpaths': '["$.k1", "$.v1"]', 'max_filter_ratio': '1'})
  assert res['Status'] == 'Success'
  assert res['NumberTotalRows'] == (res['NumberLoadedRows'] + res['NumberUnselectedRows'] +
                                    res['NumberFilteredRows'])
  assert res['NumberLoadedRows'] > 0 and res['LoadBytes'] > 0
  assert srv.query('select * from regression_test.tbl_test_load_json_with_jsonpath '
                   'order by k1') == [(22, None), (1000, 7395.231067), (2000, None)]


def test_load_json_null_to_nullable(make_stream_load_server):
  srv = make_stream_load_server(schema_sql='''
      CREATE DATABASE test_query_db;
      CREATE TABLE IF NOT EXISTS test_query_db.tbl_test_json_load (
        `k1` CHAR NULL COMMENT "",
        `v1` CHAR NULL COMMENT ""
      ) ENGINE=OLAP
      DUPLICATE KEY(`k1`)
      DISTRIBUTED BY HASH(`k1`) BUCKETS 1
      PROPERTIES ("replication_allocation" = "tag.location.default: 1")''')
  res = stream_load(srv, 'test_query_db', 'tbl_test_json_load', _read('test_char.json'),
                    {'strip_outer_array': 'true', 'format': 'json', 'max_filter_ratio': '1'})
  assert res['Status'] == 'Success'
  assert res['NumberTotalRows'] == 7 and res['NumberLoadedRows'] == 4
  assert srv.query('select * from test_query_db.tbl_test_json_load order by k1') == [
      (None, None), ('', ''), ('H', 'H'), ('h', 'h')]


DEFAULT_VALUE_DDL = '''
    CREATE DATABASE regression_test;
    CREATE TABLE IF NOT EXISTS regression_test.test_json_load_default_value (
    id INT NOT NULL DEFAULT '0',
    country VARCHAR(32) NULL DEFAULT 'default_country',
    city VARCHAR(32) NULL DEFAULT 'default_city',
    code BIGINT DEFAULT '1111')
    DISTRIBUTED BY RANDOM BUCKETS 10
    PROPERTIES("replication_num" = "1");
'''


def test_json_load_default_value(make_stream_load_server):
  srv = make_stream_load_server(schema_sql=DEFAULT_VALUE_DDL)
  table = 'test_json_load_default_value'
  stream_load(srv, 'regression_test', table, _read('simple_json.json'),
              {'strip_outer_array': 'true', 'format': 'json'})
  rows = srv.query('select * from regression_test.%s order by id' % table)
  assert rows[0] == (1, 'default_country', 'beijing', 2345671)
  assert rows[-1] == (10, 'default_country', 'hefei', 23456710)
  srv2 = make_stream_load_server(schema_sql=DEFAULT_VALUE_DDL)
  stream_load(srv2, 'regression_test', table, _read('simple_json2_lack_one_column.json'),
              {'strip_outer_array': 'true', 'format': 'json'})
  assert [r[2] for r in srv2.query('select * from regression_test.%s order by id' % table)] == [
      'default_city', 'shanghai', 'beijing', 'shenzhen', 'hangzhou', 'nanjing',
      'default_city', 'chengdu', 'default_city', 'default_city']


def test_csv_with_skip_lines(make_stream_load_server):
  ddl = '''
      CREATE DATABASE regression_test;
      CREATE TABLE IF NOT EXISTS regression_test.test_csv_with_skip_lines (
          `k1` int(20) NULL,
          `k2` bigint(20) NULL,
          `v1` tinyint(4)  NULL,
          `v2` string  NULL,
          `v3` date  NULL,
          `v4` datetime  NULL
      ) ENGINE=OLAP
      DUPLICATE KEY(`k1`, `k2`)
      COMMENT 'OLAP'
      DISTRIBUTED BY HASH(`k1`, `k2`) BUCKETS 3
      PROPERTIES ("replication_allocation" = "tag.location.default: 1");'''
  body = _read('csv_with_skip_lines.csv')
  cases = [({'skip_lines': '3'}, [4]), ({'skip_lines': '4'}, []), ({'skip_lines': '5'}, []),
           ({'format': 'csv_with_names', 'skip_lines': '3'}, [2, 3, 4]),
           ({'format': 'csv_with_names_and_types', 'skip_lines': '3'}, [3, 4]),
           ({'format': 'csv', 'skip_lines': '3'}, [4])]
  for headers, keys in cases:
    srv = make_stream_load_server(schema_sql=ddl)
    res = stream_load(srv, 'regression_test', 'test_csv_with_skip_lines', body,
                      dict(headers, column_separator=','))
    assert res['Status'] == 'Success', (headers, res)
    rows = srv.query('select * from regression_test.test_csv_with_skip_lines order by k1, k2')
    assert [r[0] for r in rows] == keys, headers
    if rows:
      assert rows[-1] == (4, 5, 3, 'abc', '2022-12-01', '2022-12-01 09:30:31')
    srv.stop()


def test_stream_load_empty_file(make_stream_load_server):
  srv = make_stream_load_server(schema_sql='''
      CREATE DATABASE regression_test;
      CREATE TABLE IF NOT EXISTS regression_test.test_stream_load_empty_file (
          `k1` bigint(20) NULL,
          `k2` bigint(20) NULL,
          `v1` tinyint(4) SUM NULL,
          `v2` tinyint(4) REPLACE NULL,
          `v3` tinyint(4) REPLACE_IF_NOT_NULL NULL,
          `v4` smallint(6) REPLACE_IF_NOT_NULL NULL,
          `v5` int(11) REPLACE_IF_NOT_NULL NULL,
          `v6` bigint(20) REPLACE_IF_NOT_NULL NULL,
          `v7` largeint(40) REPLACE_IF_NOT_NULL NULL,
          `v8` datetime REPLACE_IF_NOT_NULL NULL,
          `v9` date REPLACE_IF_NOT_NULL NULL,
          `v10` char(10) REPLACE_IF_NOT_NULL NULL,
          `v11` varchar(6) REPLACE_IF_NOT_NULL NULL,
          `v12` decimal(27, 9) REPLACE_IF_NOT_NULL NULL
      ) ENGINE=OLAP
      AGGREGATE KEY(`k1`, `k2`)
      COMMENT 'OLAP'
      PARTITION BY RANGE(`k1`)
      (PARTITION partition_a VALUES [("-9223372036854775808"), ("100000")),
      PARTITION partition_b VALUES [("100000"), ("1000000000")),
      PARTITION partition_c VALUES [("1000000000"), ("10000000000")),
      PARTITION partition_d VALUES [("10000000000"), (MAXVALUE)))
      DISTRIBUTED BY HASH(`k1`, `k2`) BUCKETS 3
      PROPERTIES ("replication_allocation" = "tag.location.default: 1");''')
  res = stream_load(srv, 'regression_test', 'test_stream_load_empty_file',
                    _read('test_empty_file.csv'), {})
  assert res['Status'] == 'Success' and res['NumberTotalRows'] == 0
  assert srv.query('select * from regression_test.test_stream_load_empty_file') == []
  # The same table takes rows: REPLACE_IF_NOT_NULL keeps the old value on NULL.
  stream_load(srv, 'regression_test', 'test_stream_load_empty_file',
              b'1\t2\t3\t4\t5\t6\t7\t8\t9\t2024-01-01 00:00:00\t2024-01-01\tc\tv\t1.5\n', {})
  stream_load(srv, 'regression_test', 'test_stream_load_empty_file',
              b'1\t2\t1\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n', {})
  assert srv.query('select k1, v1, v2, v3, v12 from '
                   'regression_test.test_stream_load_empty_file') == [
                       (1, 4, None, 5, __import__('decimal').Decimal('1.500000000'))]
